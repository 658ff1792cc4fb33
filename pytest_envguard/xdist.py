"""pytest-xdist: every process checks its own environment (workers may be other hosts).

:func:`register` is called only when pytest-xdist is installed. On a worker it
applies the opt-in GPU split (``envguard_xdist_gpus``) before anything could
initialise CUDA; on the controller it registers :class:`XdistHooks`, which
merges what each worker found and ends the run, naming the worker and its
host, when a worker's contract is not met. Workers send their verdicts as
plain data (``Verdict.to_dict``) through ``config.workeroutput``; the
controller rebuilds them with ``Verdict.from_dict`` — never by re-parsing the
printed lines.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_envguard.hooks import EnvguardState
    from pytest_envguard.option_table import Options

#: On the controller: what each worker reported, by worker id (for --envguard-json).
WORKERS = pytest.StashKey[dict[str, dict[str, Any]]]()

_WORKEROUTPUT_KEY = "envguard"


def is_worker(config: pytest.Config) -> bool:
    # xdist gives each worker's config a ``workerinput`` dict: the documented way to tell.
    return hasattr(config, "workerinput")


def register(config: pytest.Config, state: EnvguardState) -> None:
    if is_worker(config):
        split_gpus_among_workers(state)
    else:
        config.pluginmanager.register(XdistHooks(state), "envguard-xdist")


def leaves_contract_to_workers(config: pytest.Config, options: Options) -> bool:
    """``envguard_xdist_controller = skip`` on an xdist controller that will start workers
    (its ``dsession`` plugin is registered at configure time): the controller runs no
    test, so only the workers' environments matter (``--tx ssh=gpu-host`` from a laptop)."""
    return (options.xdist_controller == "skip" and not is_worker(config)
            and config.pluginmanager.hasplugin("dsession"))


def split_gpus_among_workers(state: EnvguardState) -> None:
    """``envguard_xdist_gpus``: on an xdist worker, narrow ``CUDA_VISIBLE_DEVICES`` to the
    worker's share of what is visible (an outer setting is split, never the physical GPUs;
    rehearsed GPUs as the real ones would be, so each worker then sees its share of them).

    This is the one place the plugin changes the process environment, and only when asked:
    it runs at configure time, before anything could initialise CUDA and before the
    contract is checked, so the worker's contract sees its own share."""
    setting = state.options.xdist_gpus
    if setting == "off":
        return
    from pytest_envguard import cuda_visibility
    from pytest_envguard.checks.gpu import visible_gpus
    from pytest_envguard.environment import Environment

    environ = os.environ
    try:
        workers = int(environ.get("PYTEST_XDIST_WORKER_COUNT", ""))
    except ValueError:
        return
    outer = environ.get("CUDA_VISIBLE_DEVICES")
    # Rehearsed GPUs (ENVGUARD_OVERRIDE_GPUS, a target) are split as real ones would be.
    env = Environment(settings=state.options.settings(cache_dir=state.cache_dir, rootdir=None),
                      target=state.options.target)
    view = visible_gpus(env)
    entries = view.entries if view.known else None
    share = cuda_visibility.split_for_worker(environ.get("PYTEST_XDIST_WORKER", ""), workers,
                                             entries, outer,
                                             setting if isinstance(setting, int) else None)
    if share is not None and share.devices is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = share.devices


def send_to_controller(config: pytest.Config, state: EnvguardState) -> None:
    """On a worker: hand the contract verdicts and the per-test verdicts to the controller
    through ``config.workeroutput`` (plain data, as it crosses execnet). The skip groups
    and the outcomes the controller counts from the test reports it receives."""
    if not (state.contract_verdicts or state.tests):
        return
    from pytest_envguard import render

    output: dict[str, Any] = config.workeroutput  # type: ignore[attr-defined]
    output[_WORKEROUTPUT_KEY] = {
        "host": render.host(),
        "contract": [verdict.to_dict() for verdict in state.contract_verdicts],
        "tests": {nodeid: [verdict.to_dict() for verdict in verdicts]
                  for nodeid, verdicts in state.tests.items()},
    }


class XdistHooks:
    """The controller's side: merge each finished worker's findings."""

    def __init__(self, state: EnvguardState) -> None:
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """Merge what a finished worker found, and end the run with exit status 6, naming
        the worker and its host, when its contract was not met.

        A worker whose contract fails exits before collecting, so the scheduler, which
        waits for every worker's collection, has started no test anywhere yet.
        """
        from pytest_envguard import ci_reports, render
        from pytest_envguard.option_table import EXIT_CONTRACT_UNMET
        from pytest_envguard.verdicts import Verdict

        output = getattr(node, "workeroutput", None)
        if not isinstance(output, dict) or _WORKEROUTPUT_KEY not in output:
            return
        payload = output.pop(_WORKEROUTPUT_KEY)  # xdist may report a crashed worker down twice
        config: pytest.Config = node.config
        state = self.state
        worker = str(node.gateway.id)
        contract = [Verdict.from_dict(data) for data in payload["contract"]]
        config.stash.setdefault(WORKERS, {})[worker] = {"host": payload["host"],
                                                        "contract": payload["contract"]}
        for nodeid, verdicts in payload["tests"].items():
            state.tests.setdefault(nodeid, []).extend(Verdict.from_dict(data) for data in verdicts)
        where = render.judged_on(state.options.target, f"worker {worker} (host {payload['host']})")
        if state.options.junit_properties and contract:
            ci_reports.add_junit_property(config, f"envguard.worker.{worker}",
                                          f"{payload['host']}: contract "
                                          f"{render.contract_summary(contract)}")
        unmet = [verdict for verdict in contract if not verdict.ok]
        if not unmet or state.stop is not None:  # reported once: the first worker that missed it
            return
        render.write_section(config, f"envguard: session contract not met on {where}",
                             render.verdict_table(contract))
        first = unmet[0]
        status = (f"envguard: {len(unmet)} of {len(contract)} contract requirements not met on "
                  f"{where} (first: {first.line} — found {first.found}); no tests were run")
        state.stop_run(status, EXIT_CONTRACT_UNMET, shown_by_pytest=True)
        # Ends xdist's loop before it schedules a test on the other workers; pytest shows
        # the status as it shows "Interrupted: 1 error during collection", and the plugin's
        # sessionfinish sets the exit status.
        raise pytest.Session.Interrupted(status)
