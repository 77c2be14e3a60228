"""The admin UI's data layer: async queries over the gateway's database for the data pages.

One small module per page: ``overview`` (periods, deployments), ``usage`` (per local day, by dimension,
CSV), ``logs`` (keyset pages, detail), ``audit`` (keyset pages), ``tail`` (the live tail's fan-out);
``zones`` (days in ``general_settings.ui_timezone``), ``scope`` (who reads which rows: the management
API's rule), ``cursor`` (opaque keyset cursors).  Every query takes the ``Caller`` and applies the
same visibility as the API.  Nothing here is imported by the request path (the accounting stage holds
a ``LiveTail`` only once a tail was opened).
"""
