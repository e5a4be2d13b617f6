"""tracker: follows the Ukraine-Russia peace process in the news."""

__version__ = "0.1.0"
