"""The environment a job's entry point runs in: the names the runner sets and the library reads.

Both sides import them from here, so the two cannot drift apart.  Importing
this module does nothing else (``transfer`` cannot be imported by the
runner's own modules for that reason: it registers its exit report).
"""

from __future__ import annotations

#: Pacifica's cart service, where ``download()`` fetches from (``--cart-url``).
CART_URL = 'PACIFICA_CART_URL'
#: Pacifica's ingest service, where ``upload()`` files to (``--ingest-url``).
INGEST_URL = 'PACIFICA_INGEST_URL'
#: Pacifica's policy service (``--policy-url``), for entry points that ask it themselves;
#: ``upload()`` does not need it, as the ingest service asks it.
POLICY_URL = 'PACIFICA_POLICY_URL'
#: The consumer's id, which ``upload()`` marks its transactions with.
CONSUMER_ID = 'PACIFICA_CONSUMER_ID'
#: A file that gets one JSON line per rejection no handler received (``transfer.report_unhandled``).
FAILURES = 'PACIFICA_CONSUMER_FAILURES'
