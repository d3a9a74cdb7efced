"""Schema records and the typed config: errors name the key, the file and the allowed values."""

import pytest

from talmts.config import Config, ConfigError, load_config
from talmts.schema import ClassMap, SchemaError, check_segment, normalize_subset


def test_class_map_is_one_based_with_background_zero():
    cm = ClassMap(("run", "jump"))
    assert cm.index("run") == 1 and cm.index("jump") == 2 and cm.name(2) == "jump"
    with pytest.raises(KeyError, match="swim"):
        cm.index("swim")
    with pytest.raises(ValueError, match="duplicate"):
        ClassMap(("a", "a"))
    assert ClassMap.from_labels(["b", "a", "b"]).names == ("a", "b")


def test_subset_aliases_and_errors():
    assert normalize_subset("Validation") == "validation"
    assert normalize_subset("training") == "train"
    with pytest.raises(SchemaError, match=r"gt\.json.*'v1'.*subset"):
        normalize_subset("dev", file="gt.json", record="v1")
    with pytest.raises(SchemaError, match="before start"):
        check_segment(5, 4, file="f", record="r")
    with pytest.raises(SchemaError, match="negative"):
        check_segment(-1, 4, file="f", record="r")


def test_defaults_follow_the_paper():
    cfg = load_config()
    assert isinstance(cfg, Config)
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.batch_size, cfg.train.epochs) == (1e-5, 1e-3, 1, 25)
    assert (cfg.loss.alpha, cfg.loss.beta) == (10.0, 1.0)
    assert (cfg.data.clip_frames, cfg.data.frame_size, cfg.model.fsa.patch) == (256, 96, 24)


def test_yaml_base_and_dotted_overrides(tmp_path):
    (tmp_path / "base.yaml").write_text("train:\n  epochs: 3\nmodel:\n  fsa:\n    patch: 48\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\ntrain:\n  lr: 0.001\n")
    cfg = load_config(tmp_path / "child.yaml", ["model.fsa.patch=32", "train.epochs=5", "infer.nms_iou_gate=0.3"])
    assert cfg.train.epochs == 5 and cfg.train.lr == 1e-3 and cfg.model.fsa.patch == 32
    assert cfg.infer.nms_iou_gate == 0.3 and cfg.model.fsa.layers == 1


def test_exponent_without_a_dot_is_a_float(tmp_path):
    # YAML 1.1 (PyYAML) reads 3e-3 as the string "3e-3"; a float field takes it as the number users mean
    (tmp_path / "c.yaml").write_text("train:\n  weight_decay: 1e-3\n")
    cfg = load_config(tmp_path / "c.yaml", ["train.lr=3e-3", "infer.nms_iou_gate=5E-1"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.infer.nms_iou_gate) == (3e-3, 1e-3, 0.5)
    with pytest.raises(ConfigError, match=r"train\.lr must be a number, got 'fast'"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match=r"train\.epochs must be int"):  # ints stay strict
        load_config(None, ["train.epochs=1e1"])


def test_errors_name_key_and_allowed_values(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown key 'train\.epoch'.*epochs"):
        load_config(None, ["train.epoch=3"])
    with pytest.raises(ConfigError, match=r"model\.stt\.tokens='pixels'.*features"):
        load_config(None, ["model.stt.tokens=pixels"])
    with pytest.raises(ConfigError, match=r"train\.epochs must be int"):
        load_config(None, ["train.epochs=three"])
    with pytest.raises(ConfigError, match="must divide"):
        load_config(None, ["model.fsa.patch=25"])
    with pytest.raises(ConfigError, match="test split"):
        load_config(None, ["data.val_subset=test"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_dump_roundtrip(tmp_path):
    cfg = load_config(None, ["train.epochs=7", "loss.ranges=[[0,30],[15,60],[30,120],[60,240],[96,768],[256,768]]"])
    cfg.dump(tmp_path / "c.yaml")
    again = load_config(tmp_path / "c.yaml")
    assert again == cfg


def test_json_numbers_are_never_bools():
    """The one type test of numbers read from JSON (prepare records, model contracts): Python's bools are ints."""
    from talmts.schema import is_number, is_whole

    for value, number, whole in [
        (3, True, True), (0, True, True), (-7, True, True), (2.5, True, False), (2.0, True, False),
        (float("inf"), True, False), (True, False, False), (False, False, False), ("3", False, False),
        (None, False, False), ([1], False, False),
    ]:  # fmt: skip
        assert (is_number(value), is_whole(value)) == (number, whole), value


def test_a_bool_is_refused_where_a_prepare_record_or_a_model_contract_wants_a_number(tmp_path):
    """Both readers of such numbers refuse ``true`` in place of one, with the field named."""
    import json

    from talmts.data.record import PrepareOptions
    from talmts.engine.inference.runtime import ModelFolderError, read_contract
    from talmts.errors import InputError

    for field in ("size", "fps", "max_frames"):
        with pytest.raises(InputError, match=field):
            PrepareOptions(**{field: True})
    contract = {
        "format": "talmts-model", "version": 1, "classes": ["run"], "normalization": {},
        "sampling": {"frame_size": 32, "crop": 32, "fps": 10.0, "max_frames": None},
        "windows": {"clip_frames": 32, "test_stride": 8, "protocol": "sliding"},
        "outputs": {"anchors": [1.0], "level_sizes": [4]}, "postprocess": {},
        "streams": [{"format": "onnx", "file": "rgb.onnx", "flow": "none"}],
    }  # fmt: skip
    for section, field, value in [
        ("windows", "clip_frames", True), ("sampling", "fps", True), ("outputs", "anchors", [True]),
        ("outputs", "level_sizes", [True]),
    ]:  # fmt: skip
        bad = json.loads(json.dumps(contract))
        bad[section][field] = value
        (tmp_path / "talmts-model.json").write_text(json.dumps(bad))
        with pytest.raises(ModelFolderError, match=rf"'{section}\.{field}' must be"):
            read_contract(tmp_path)
    (tmp_path / "talmts-model.json").write_text(json.dumps(contract))
    with pytest.raises(ModelFolderError, match="rgb.onnx.*does not exist"):  # the fields passed: the graph is next
        read_contract(tmp_path)
