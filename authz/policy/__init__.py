"""The AuthPolicy resource: raw documents -> validated -> compiled -> one immutable snapshot.

A check reads one `Snapshot` and nothing else from here; compiling happens off the check path,
and a document that fails to compile leaves the last good version of its policy serving.
"""
