"""Presentation shared by the reports (``lab.report``) and the dashboards (``dashboards``): what
both show of a results folder, drawn and worded once.

* ``load``: tables across the runs of a results folder, only the columns and rows asked for;
* ``theory``: the probe families as a reader meets them (title, tables, theory), from the schema;
* ``frames``: derived frames (controls matching a shape, distinct values, S/S_Page);
* ``valleys``: the entanglement valley at the row|column cut, one row per profile;
* ``provenance``: what each run read, with which options and versions;
* ``blocks``: small tables formatted as text;
* ``findings``: what fine-tuning did, in sentences with numbers computed from the tables;
* ``headlines``: one headline figure per family, which the findings' numbers refer to;
* ``digests``: per-run summaries of the attention, thresholds, unit and merge tables;
* ``colours``: one colour per run in every figure;
* ``figures``: rows in, a :class:`~lab.present.figures.common.Chart` out, theory baselines drawn in.

Both the reports and the dashboards import this package; it imports neither of them.
"""
