"""Reports: a run's pictures and report.html (run.py), a sweep's or an experiment's report.html
(sweep.py), both one self-contained page (page.py, template.html, style.css)."""

from .run import summary_lines, write_pictures, write_report, write_score_curve
from .sweep import write_sweep_report

__all__ = ["summary_lines", "write_pictures", "write_report", "write_score_curve", "write_sweep_report"]
