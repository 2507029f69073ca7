"""The action layer: one function per thing a person does with the platform.

Each action takes the workspace, the acting user (``actor=``) and keyword
arguments, acts as that user (every audit line names them), and returns a
typed result. The CLI (:mod:`research_kit.cli`), the web app
(:mod:`research_kit.web`) and the demo call these and nothing below them for a
user's action, so a rule about who may do what has one home.

=================  ===========================================================
module             actions
=================  ===========================================================
``setup``          a workspace, a simulated export, the pseudonymisation key
``extracts``       ingest, list, risk report, synthetic twin
``budget``         grant, balances, spend history, sandbox reset
``query``          a DP query of any kind
``runs``           check a pipeline, run it, rerun every study on a new extract
``review``         a request's life: list, show, check, submit, mitigate, vote,
                   comment, release
``people``         users and their roles, passwords
``records``        the audit log: read and verify
``confinement``    the sandbox: check, waive, unwaive; the lab
=================  ===========================================================
"""
