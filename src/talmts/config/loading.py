"""Reading a config: YAML files (``_base_: other.yaml`` inherits from another file; a file holds only what differs
from the defaults), dotted overrides (``model.fsa.patch=48 train.epochs=5``), type coercion, range and
cross-field validation.

A config comes from files and command lines that may be careless or hostile, so YAML is read with the safe loader
(no Python tags), a value that expands beyond :data:`MAX_CONFIG_NODES` through aliases is refused before anything
walks it, a base config must be a ``.yaml`` file, and error messages quote values only in part (``fields.shown``)
and keys only when they look like config keys: nothing of a file that is not a config reaches a message.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import yaml

from talmts.config.fields import range_errors, shown
from talmts.config.sections import BACKBONE_GRID, Config, ConfigError
from talmts.subsets import canonical_subset, subset_help

BUNDLED_DIR = Path(__file__).parent / "bundled"
# Values (lists, mappings, scalars) in a config once every alias is expanded. The largest real config (a class list
# of ActivityNet's 200 names, the loss ranges) holds a few hundred; a YAML alias bomb of 300 bytes holds 10**9.
MAX_CONFIG_NODES = 100_000
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")  # what a config key looks like; anything else is never quoted


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (with its ``_base_`` chain), then ``key=value`` overrides, then validation."""
    raw: dict[str, Any] = {}
    if path is not None:
        raw = _read_with_bases(Path(path))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value, e.g. train.epochs=5")
        key, value = item.split("=", 1)
        parsed = _parse_yaml(value, f"override {shown(item)}")
        _set_dotted(raw, key.strip(), parsed)
    cfg = _build(Config, raw, prefix="", source=str(path or "<defaults>"))
    validate(cfg)
    return cfg


def config_from_dict(raw: dict[str, Any], source: str = "<dict>") -> Config:
    """A Config from a plain dict such as ``Config.to_dict()`` (e.g. the one stored in a checkpoint), validated."""
    cfg = _build(Config, raw, prefix="", source=source)
    validate(cfg)
    return cfg


def resolve_config_path(name: str) -> Path:
    """A path, or the name of a config bundled with talmts (``thumos14_rgb`` or ``thumos14_rgb.yaml``)."""
    p = Path(name)
    if p.exists():
        return p
    bundled = BUNDLED_DIR / (name if name.endswith(".yaml") else f"{name}.yaml")
    if bundled.exists():
        return bundled
    raise ConfigError(f"config {name!r} not found (neither a file nor a bundled config in {bundled.parent})")


def _read_with_bases(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    if path in seen:
        raise ConfigError(f"{path}: _base_ chain loops back to itself")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text at byte {e.start}; save the file as UTF-8") from None
    except (OSError, ValueError) as e:  # a folder, a name too long, or a name the file system cannot encode
        raise ConfigError(f"config {str(path)[:200]!r} cannot be read: {type(e).__name__}") from None
    data = _parse_yaml(text, str(path)) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections (data, model, train, ...)")
    base = data.pop("_base_", None)
    if base is None:
        return data
    merged = _read_with_bases(_base_path(path, base), seen + (path,))
    _deep_merge(merged, data)
    return merged


def _base_path(path: Path, base: Any) -> Path:
    """``_base_``: a file beside ``path`` when one exists, else a config bundled with talmts (``demo``,
    ``generic.yaml``, ...), so that a user's file can build on a bundled one wherever talmts is installed."""
    if not isinstance(base, str) or not base.strip():
        raise ConfigError(f"{path}: _base_ must be a file name or the name of a bundled config, got {shown(base)}")
    name = base if base.endswith((".yaml", ".yml")) else f"{base}.yaml"
    try:
        beside, named = (path.parent / base).resolve(), (path.parent / name).resolve()
        found = next((c for c in (beside, named) if c.is_file()), None)
    except (OSError, ValueError):  # a NUL byte, a name too long, or one the file system cannot encode
        raise ConfigError(f"{path}: _base_ {base[:200]!r} is not a usable file name") from None
    if found is not None:
        if found.suffix not in (".yaml", ".yml"):  # e.g. _base_: /etc/shadow - never read, never quoted
            raise ConfigError(f"{path}: _base_: {base[:200]} is not a YAML config (a base config is a .yaml file)")
        return found
    bundled = BUNDLED_DIR / name
    if "/" not in base and bundled.is_file():
        return bundled.resolve()
    raise ConfigError(
        f"{path}: _base_: {base} is neither a file beside it ({beside}) nor a bundled config "
        f"(one of {bundled_configs()})"
    )


def _parse_yaml(text: str, where: str) -> Any:
    """Safe YAML, refused in one line that quotes nothing of the text: a syntax error gives its position only, a
    value that aliases expand past MAX_CONFIG_NODES (or that contains itself) is refused before anything walks it."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        raise ConfigError(f"{where}: not valid YAML{at}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None
    except ValueError:  # an integer of more than 4,300 digits (Python's limit on converting text to int)
        raise ConfigError(f"{where}: a number too long to be a config value") from None
    _check_size(data, where)
    return data


def _check_size(data: Any, where: str) -> None:
    """Refuse a value of more than MAX_CONFIG_NODES values once aliases are expanded, or one that holds itself.
    Shared parts are counted once per use but walked once (memoised by identity), so a bomb costs microseconds."""
    sizes: dict[int, int] = {}
    walking: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in walking:
            raise ConfigError(f"{where}: a YAML alias refers to a value that contains it; write the value out")
        walking.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_CONFIG_NODES:
                raise ConfigError(
                    f"{where}: YAML aliases expand to more than {MAX_CONFIG_NODES:,} values; a config is far smaller"
                )
        walking.discard(key)
        sizes[key] = total
        return total

    try:
        size(data)
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply to be a config") from None


def _key(name: Any, prefix: str = "") -> str:
    """A key for a message: quoted when it looks like a config key, else only described (never file content)."""
    return f"'{prefix}{name}'" if isinstance(name, str) and _KEY.fullmatch(name) else "(a key that is no config name)"


def bundled_configs() -> list[str]:
    """Names of the configs shipped with talmts (usable as ``_base_: NAME`` and on the command line)."""
    return sorted(p.stem for p in BUNDLED_DIR.glob("*.yaml"))


def _deep_merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_merge(dst[k], v)
        else:
            dst[k] = v


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = raw
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {shown(key)}: {shown(p)} is a value, not a section")
    node[parts[-1]] = value


def _build(cls: type, raw: Any, prefix: str, source: str) -> Any:
    if not isinstance(raw, dict):
        got = type(raw).__name__ if raw is None or isinstance(raw, list | dict | str) else shown(raw)
        raise ConfigError(f"{source}: {prefix.rstrip('.') or 'config'} must be a mapping, got a {got}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in raw if k not in names), key=str)
    if unknown:
        where = prefix.rstrip(".") or "the top level"
        raise ConfigError(
            f"{source}: unknown key {_key(unknown[0], prefix)}; allowed keys under {where}: {sorted(names)}"
        )
    kwargs = {}
    for name, value in raw.items():
        tp = hints[name]
        key = f"{prefix}{name}"
        if dataclasses.is_dataclass(tp):
            kwargs[name] = _build(tp, value, key + ".", source)
        else:
            kwargs[name] = _coerce(tp, value, key, source)
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; ints are accepted where floats are expected."""
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{source}: {key}={shown(value)} is not allowed; choose one of {list(allowed)}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(a, value, key, source)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{source}: {key}={shown(value)} has the wrong type")
    if origin is list:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: {key} must be a list, got {shown(value)}")
        (inner,) = get_args(tp) or (Any,)
        return [_coerce(inner, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if tp is Any:
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:  # an integer beyond any float
            raise ConfigError(f"{source}: {key}={value} is too large a number") from None
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"{source}: {key} must be a number, got {shown(value)}") from None
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{source}: {key} must be an integer, got {shown(value)}")
    if not isinstance(value, tp):
        raise ConfigError(f"{source}: {key} must be {tp.__name__}, got {type(value).__name__} {shown(value)}")
    return value


def validate(cfg: Config) -> None:
    """Every number within its declared range, subset names made canonical, then the cross-field checks."""
    errors = range_errors(cfg)
    if errors:
        more = f" (and {len(errors) - 1} more: {'; '.join(errors[1:4])})" if len(errors) > 1 else ""
        raise ConfigError(errors[0] + more)
    d, m = cfg.data, cfg.model
    for key in ("train_subset", "val_subset", "test_subset"):
        value = getattr(d, key)
        if value is not None:
            name = canonical_subset(value)
            if name is None:
                raise ConfigError(f"data.{key}={shown(value)} is not a subset name: {subset_help()}")
            setattr(d, key, name)
    if d.classes is not None and len(set(d.classes)) != len(d.classes):
        twice = sorted({c for c in d.classes if d.classes.count(c) > 1})
        raise ConfigError(f"data.classes lists {twice} more than once: each class once")
    if m.channels % m.groups:
        raise ConfigError(f"model.groups={m.groups} must divide model.channels={m.channels} (GroupNorm)")
    for name, sub in (("stt", m.stt), ("fsa", m.fsa)):
        if sub.enabled and sub.dim % sub.heads:
            raise ConfigError(f"model.{name}.heads={sub.heads} must divide model.{name}.dim={sub.dim}")
    if d.frame_size > d.stored_size:
        raise ConfigError(f"data.frame_size={d.frame_size} exceeds data.stored_size={d.stored_size}")
    if m.fsa.enabled and d.frame_size % m.fsa.patch:
        raise ConfigError(
            f"model.fsa.patch={m.fsa.patch} must divide data.frame_size={d.frame_size} "
            f"(e.g. one of {[p for p in (96, 48, 32, 24, 16, 12, 8) if d.frame_size % p == 0]})"
        )
    if m.stt.enabled and m.stt.tokens == "frames" and d.frame_size % m.stt.patch:
        raise ConfigError(f"model.stt.patch={m.stt.patch} must divide data.frame_size={d.frame_size}")
    if d.clip_frames % 2 ** (m.levels + 1):
        raise ConfigError(f"data.clip_frames={d.clip_frames} must be a multiple of {2 ** (m.levels + 1)}")
    if cfg.loss.ranges is not None and len(cfg.loss.ranges) != m.levels:
        raise ConfigError(f"loss.ranges needs one [lo, hi] pair per level ({m.levels}), got {len(cfg.loss.ranges)}")
    if d.val_subset is not None and d.val_subset == d.test_subset:
        raise ConfigError(f"data.val_subset={d.val_subset!r} is the test split: checkpoints must not be selected on it")
    if m.backbone.context == "video":
        _check_video_context(cfg)


def _check_video_context(cfg: Config) -> None:
    """One backbone pass per video: a frozen backbone whose windows start on its temporal grid."""
    d, b = cfg.data, cfg.model.backbone
    if not b.freeze_bn:
        raise ConfigError("model.backbone.context=video needs model.backbone.freeze_bn=true (BN batch statistics "
                          "would depend on the window)")  # fmt: skip
    for key in ("train_stride", "test_stride"):
        value = getattr(d, key)
        if value % BACKBONE_GRID:
            raise ConfigError(
                f"data.{key}={value} must be a multiple of {BACKBONE_GRID} under model.backbone.context=video "
                f"(windows start on the backbone's temporal grid), e.g. {max(1, round(value / BACKBONE_GRID)) * BACKBONE_GRID}"
            )
