"""Hyper-parameter sweeps on dask.distributed, and ensembles of trained models.

Takes: a ``Network``, a grid of ``Model.fit`` keywords and seeds, data, a results folder (sweeps); trained models
and data (ensembles).  Gives:

- ``sweep(net, grid, train, evaluation_data=None, epochs=..., client=None, out=DIR, **fit_kwargs)``: one dict per
  trial (``symbp.sweep.engine``), every trial saved as it ends (``symbp.sweep.store``);
- ``load_results(DIR)``: the records of a results folder;
- ``ranked``, ``best_trial``, ``rich_table``, ``markdown_table``, ``plot_sweep`` (``symbp.sweep.report``);
- ``vote(models, X)``, ``vote_report(models, data)`` (``symbp.sweep.vote``);
- the ``symbp sweep`` and ``symbp vote`` commands (``symbp.sweep.cli``).

dask.distributed is the ``sweep`` extra (``pip install 'symbp[sweep]'``), imported only when a sweep runs;
``vote`` and the reports work without it.

``symbp.sweep`` (the attribute of the top-level package) is the *function* ``sweep``, as ``sb.sweep(...)`` reads;
so that ``symbp.sweep.plot_sweep(...)`` and the like read as written too, the function carries this package's
other public names as attributes.  ``from symbp.sweep import plot_sweep`` is the same thing.
"""

from symbp.sweep.engine import SweepResults, local_cluster, sweep
from symbp.sweep.report import best_trial, markdown_table, plot_sweep, ranked, rich_table
from symbp.sweep.store import load_results
from symbp.sweep.vote import VoteReport, plurality, vote, vote_report

__all__ = ["SweepResults", "VoteReport", "best_trial", "load_results", "local_cluster", "markdown_table",
           "plot_sweep", "plurality", "ranked", "rich_table", "sweep", "vote", "vote_report"]

for _name in __all__:
    if _name != "sweep":
        setattr(sweep, _name, globals()[_name])
del _name
