"""Every night's results in one embedded store, and change points over each cell's series.

Storage (`store`), statistics (`changepoint`) and rendering (`report.history`) apart,
as asv and pytest-benchmark keep them.
"""
