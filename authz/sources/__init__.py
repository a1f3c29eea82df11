"""Policy files: read from disk (polled), and checked offline by `authz validate`.

A source produces SourceDocuments and hands its complete current set to the PolicyStore;
it never compiles or decides anything itself. The other source, the Kubernetes API, is
authz.controller.
"""
