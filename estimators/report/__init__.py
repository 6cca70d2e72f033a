"""The report folder a person reads: summary.csv, the figures, report.md and report.html.

    write_report(df, folder)    # df: the tidy results (with attrs), e.g. results.load_results(folder)

One summary, one document, two renderers: ``estimators.summary.summarize`` computes every number
once; ``sections.build_document`` turns it (and the figures of ``figures.draw_figures``) into a
``Document``, a list of sections of paragraphs, tables (DataFrames) and figures (file + caption);
``markdown.render_markdown`` and ``html.render_html`` lay that one document out.

    document.py   the section and block types        sections.py  the run's document
    figures.py    the PNG figures                    display.py   tables reshaped for people
    markdown.py   the markdown renderer              html.py      the HTML renderer
    models.py     the models table (zoo manifests)   run.py       run and environment facts
    write.py      write_report

The names below are imported lazily (PEP 562), so ``estimators.report.document`` and the two
renderers, which ``estimators compare`` uses, load without matplotlib. No TensorFlow anywhere.
"""

from estimators.lazy import lazy_exports

_EXPORTS = {
    "write_report": "estimators.report.write",
    "FIGURES": "estimators.report.figures",
    "KHAT_FIGURE": "estimators.report.figures",
    "COVERAGE_FIGURE": "estimators.report.figures",
    "SANDWICH_FIGURE": "estimators.report.figures",
    "draw_figures": "estimators.report.figures",
    "build_document": "estimators.report.sections",
    "model_facts": "estimators.report.models",
    "render_markdown": "estimators.report.markdown",
    "render_html": "estimators.report.html",
    "display_names": "estimators.summary",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
