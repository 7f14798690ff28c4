"""The connectors, one module each, and the registry that builds one from a stored source."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel

from cohorta.sources.connectors.base import Connector, Context, RemoteSegment, SourceError
from cohorta.sources.connectors.csv_file import CsvConfig, CsvConnector, CsvCredentials
from cohorta.sources.connectors.emarsys import REQUIRED, EmarsysConfig, EmarsysConnector, EmarsysCredentials
from cohorta.sources.connectors.json_http import JsonConfig, JsonConnector, JsonCredentials

__all__ = ["CONFIGS", "CREDENTIALS", "Connector", "Context", "RemoteSegment", "SourceError", "build", "required"]

CONFIGS: dict[str, type[BaseModel]] = {"csv": CsvConfig, "emarsys": EmarsysConfig, "json": JsonConfig}
CREDENTIALS: dict[str, type[BaseModel]] = {
    "csv": CsvCredentials, "emarsys": EmarsysCredentials, "json": JsonCredentials,
}  # fmt: skip
_BUILDERS: dict[str, Callable[[Any, Context], Connector]] = {
    "csv": CsvConnector, "emarsys": EmarsysConnector, "json": JsonConnector,
}  # fmt: skip


def required(kind: str, config: BaseModel) -> tuple[str, ...]:
    """The credentials a configuration cannot work without."""
    if isinstance(config, EmarsysConfig):
        return REQUIRED[config.auth]
    return ()


def build(kind: str, config: dict[str, Any], ctx: Context) -> Connector:
    return _BUILDERS[kind](CONFIGS[kind].model_validate(config), ctx)
