"""Tools built on the core, each also a command (``python -m flow.<tool>``): training
(:mod:`~flow.tools.train`, data in :mod:`~flow.tools.data`), evaluation
(:mod:`~flow.tools.evaluate`, plots in :mod:`~flow.tools.plots`), batch/tiled SR
(:mod:`~flow.tools.sr`), benchmarks (:mod:`~flow.tools.bench` and its ``bench_*``
sections) and the ncnn weight importer (:mod:`~flow.tools.ncnn`).  They use models only
through :class:`flow.models.protocol.FlowModel`."""
