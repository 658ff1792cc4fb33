"""What CI reports keep of a run: junit-xml testsuite properties and the pytest-metadata entry.

Both are opt-in or conditional: junit properties with
``envguard_junit_properties = true`` (and ``--junitxml``); the
pytest-metadata entry when that plugin is active and there is a contract
(without one the plugin stays silent and probes nothing).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from pytest_envguard.environment import Environment
    from pytest_envguard.hooks import EnvguardState
    from pytest_envguard.verdicts import Verdict


def junit_xml_plugin(config: pytest.Config) -> Any:
    """pytest's junit-xml writer when --junitxml is given, found by the method that
    ``record_testsuite_property`` uses (that fixture only reaches tests, not the session)."""
    for plugin in config.pluginmanager.get_plugins():
        if callable(getattr(plugin, "add_global_property", None)):
            return plugin
    return None


def add_junit_property(config: pytest.Config, name: str, value: str) -> None:
    log = junit_xml_plugin(config)
    if log is not None:
        log.add_global_property(name, value)


def snapshot_properties(env: Environment, verdicts: Sequence[Verdict], host: str) -> list[tuple[str, str]]:
    """The environment snapshot as flat ``(name, value)`` pairs: ``envguard.<facet>.<field>``
    for each probed facet, then one ``envguard.contract`` per verdict. Lists are shown
    whole (a CI archive keeps every flag and every distribution)."""
    from pytest_envguard import render

    properties = [("envguard.schema", render.SCHEMA), ("envguard.host", host)]
    for facet, data in env.to_dict().items():
        fields = data if isinstance(data, dict) else {"value": data}
        for field, value in fields.items():
            if value is None or value in ("", [], {}):
                continue
            # As the report shows them: sizes with units, durations in ms, records as
            # key=value text — no Python repr, no raw float.
            properties.append((f"envguard.{facet}.{field}", render.shown_value(field, value, whole=True)))
    for verdict in verdicts:
        properties.append(("envguard.contract",
                           f"{verdict.status.value}: {verdict.line} — found {verdict.found}"))
    return properties


def publish_snapshot(config: pytest.Config, state: EnvguardState) -> None:
    """Opt-in junit-xml properties; the pytest-metadata entry when that plugin is active
    and there is a contract."""
    junit = state.options.junit_properties
    metadata = config.pluginmanager.hasplugin("metadata") and bool(state.contract or junit)
    if not (junit or metadata):
        return
    from pytest_envguard import render

    if junit:
        log = junit_xml_plugin(config)
        if log is not None:
            for name, value in snapshot_properties(state.environment, state.contract_verdicts,
                                                   render.host()):
                log.add_global_property(name, value)
    if metadata:
        # pytest-metadata's public API: the dict under its stash key, filled at configure time.
        from pytest_metadata.plugin import metadata_key

        environment = state.environment_if_made
        config.stash[metadata_key]["envguard"] = {
            "host": render.host(),
            "environment": " · ".join(render.facet_summaries(environment)) if environment else "",
            "contract": render.contract_summary(state.contract_verdicts) or "empty",
        }
