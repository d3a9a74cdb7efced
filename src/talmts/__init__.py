"""talmts: temporal action localization with features of multi-temporal scales (TAL-MTS)."""

__version__ = "0.1.0"
