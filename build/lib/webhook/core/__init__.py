"""The functional core: what istiod would make of an object, as pure functions.

Request types, the table of kinds, typed parsing (model), findings and codes, the rules, the
engine and its dispatcher, the cluster view's interface and index, the CEL conditions and the
generated ValidatingAdmissionPolicies. Nothing here does I/O or imports a framework, a client
or a shell package: import-linter's contracts (``make lint``) hold every module to that.
"""
