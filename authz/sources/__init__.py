"""Where policies come from: files on disk (polled) and, later, the Kubernetes API.

A source produces SourceDocuments and hands its complete current set to the PolicyStore;
it never compiles or decides anything itself.
"""
