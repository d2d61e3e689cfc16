"""Package playground is ``policyd playground``: a local web page to write and test policies.

It serves one page on loopback, every asset shipped in this package (no
network, no CDN), over an in-memory engine built from the page's panes, or
over a running server's data, read-only. scenario.py cuts a validation file
into panes and back; workbench.py answers from the same code ``policyd
validate`` runs; graph.py decides what the explanation and relationship graphs
show; server.py is the HTTP side.
"""
