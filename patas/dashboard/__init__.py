"""`patas dashboard`: a live web page of a pataslab, served on this machine.

The pages call the same library functions as the commands (`patas.analysis.status`,
`task_output`, `parse`, `summary`, `query`); this package only serves what they return, as JSON,
server-sent events and Vega-Lite charts drawn in the browser from files shipped in `static/`.
"""
