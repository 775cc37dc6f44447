"""Admission over HTTP: the AdmissionReview wire format, the review handler and the Flask app,
gunicorn's worker and its framing, TLS, metrics and logs. A shell around :mod:`webhook.core`;
it imports no other shell (the command line wires them together)."""
