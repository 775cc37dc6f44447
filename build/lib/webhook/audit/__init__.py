"""The audit: the incremental tracker, the continuous auditor, the report writer (a reconcile
loop), the Lease, report rendering and the one-off audit. A shell around :mod:`webhook.core`; what
it reads from the cluster is handed to it by the command line."""
