"""A static, self-contained HTML dashboard of a run, from its analysis frames.

Layout (one folder per run, an index of runs above them):

    dashboards/index.html                  every run in the store; built ones linked
    dashboards/trends.html                 the latest night's verdicts, change points, latency
                                           per benchmark across runs (`trends.py`)
    dashboards/RUN/index.html              overview: speedups first, the paper check, cells
    dashboards/RUN/device-NAME-HASH.html   per device: environment, int8 path, warnings
    dashboards/RUN/model-NAME-HASH.html    per model: variants, sizes, ops, agreement
    dashboards/RUN/failed.html             cells not measured as asked, with reasons

Pages are Jinja2 templates with autoescaping on; plots are inline SVG; the one script
(table sorting) and the style sheet are inlined, and a Content-Security-Policy allows
nothing else (no network fetch of any kind, no injected script even if a name got
through): the folder works from file:// on an air-gapped machine. Every figure comes from
the analysis frames; templates only place text.
"""
