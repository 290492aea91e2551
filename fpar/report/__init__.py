"""The report of a finished run: an HTML page with metrics and figures.

Public API: :func:`make_report` (``fpar report``), the pure figure functions in
:mod:`fpar.report.figures`, and the page builder in :mod:`fpar.report.page`.
"""

from fpar.report.assemble import make_report
from fpar.report.collect import ReportError

__all__ = ["ReportError", "make_report"]
