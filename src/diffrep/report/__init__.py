"""Reports: a run's pictures and report.html with its checkpoint explorer (run.py, explorer.py,
explorer.html, explorer.js), a sweep's or an experiment's report.html (sweep.py), several runs side by
side (compare.py), each one self-contained page (page.py, template.html, style.css)."""

from .compare import write_comparison_report
from .run import summary_lines, write_pictures, write_report, write_score_curve
from .sweep import write_sweep_report

__all__ = ["summary_lines", "write_comparison_report", "write_pictures", "write_report", "write_score_curve",
           "write_sweep_report"]
