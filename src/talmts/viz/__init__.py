"""Pictures and pages for people: timelines, loss curves and diagnosis plots (matplotlib, headless), and the
interactive results site of ``talmts view`` (static HTML pages that open from disk)."""

from talmts.viz.plots import LOSS_TERMS, plot_loss_curves, plot_timeline, timeline_bars
from talmts.viz.view import write_page

__all__ = ["LOSS_TERMS", "plot_loss_curves", "plot_timeline", "timeline_bars", "write_page"]
