"""Views of reports, comparisons, trends and gate results: rich tables, JSON, CSV,
markdown, PNG figures and HTML pages. Views only read; they never compute."""
