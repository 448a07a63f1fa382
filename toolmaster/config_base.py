"""The configuration's base types, in a leaf module: any module can raise a ConfigError or define a
section without importing the whole schema (toolmaster.config imports the environments)."""
from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """A configuration section: unknown keys fail at load time, assignments are validated."""
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ConfigError(ValueError):
    """A configuration value was rejected; the message names the field and the value."""
