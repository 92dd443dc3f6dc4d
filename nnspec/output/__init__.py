"""Stage 6: charts ──▶ files: dashboard HTML, Vega-Lite JSON, PNG/SVG/PDF."""
