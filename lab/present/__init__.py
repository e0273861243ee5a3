"""Presentation shared by the reports (``lab.report``) and the dashboards (``dashboards``): what
both show of a results folder, drawn and worded once.

* ``families``: one module per probe family, each its :class:`~lab.present.family.Family` record (title,
  tables, theory, findings sentences, headline figure, section); plugins register theirs there too;
* ``page``: the section spec a family writes and both the report and the dashboard render;
* ``load``: tables across the runs of a results folder, only the columns and rows asked for;
* ``frames``: derived frames (controls matching a shape, distinct values, S/S_Page);
* ``valleys``: the entanglement valley at the row|column cut, one row per profile;
* ``provenance``: what each run read, with which options and versions;
* ``blocks``: small tables formatted as text;
* ``findings``: the families' sentences gathered, and each family's headline figure that they link to;
* ``sentences``, ``picks``: how a finding is written, and which rows, checkpoints and modules it is about;
* ``digests``: per-run summaries of the attention, thresholds, unit and merge tables;
* ``colours``: one colour per run in every figure;
* ``figures``: rows in, a :class:`~lab.present.figures.common.Chart` out, theory baselines drawn in.

Both the reports and the dashboards import this package; it imports neither of them.
"""
