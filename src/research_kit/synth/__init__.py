"""Synthetic twins of extracts: the shareable tier researchers' notebooks run on.

``build_twin(ws, extract_id)`` fits a twin model on an extract (less a held-out
control set), samples every table, checks its constraints and rare values,
measures quality (SDV) and privacy (SDMetrics, anonymeter), and publishes it
to ``synthetic/ID/`` only if every figure meets the workspace policy.

SDV, RDT, CTGAN and Copulas are under the Business Source License 1.1.
"""

from research_kit.synth.publish import TwinResult, build_twin, reports_dir
from research_kit.synth.synthesizers import MODELS

__all__ = ["MODELS", "TwinResult", "build_twin", "reports_dir"]
