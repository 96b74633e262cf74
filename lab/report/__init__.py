"""The report: the runner that executes every part's notebook under a profile, the estimate and the progress
display while it runs, the summary notebook's content, and report.html / report.pdf. Imports the parts."""
