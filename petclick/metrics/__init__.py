"""The challenge's metrics, the 11-step interactive protocol and its report.

- lesion.py: Dice, false-positive and false-negative volume (18-connectivity, header spacing)
- detection.py: autoPET V's Detection-Matching Metric (lesion F1 at IoU >= 0.1) and its Dice rule
- editions.py: autopet-iv / autopet-v step counts, metric sets and scorers
- aggregate.py: trapezoid AUC over steps, per-case and cohort statistics (NaN excluded, with n)
- protocol.py: protocol modes, the 0.5 threshold and the per-step rows (the protocol runs on a
  session: petclick.inference.protocol.run_protocol)
- files.py: score saved `<case>_pred<k>.nii.gz` files against `<case>.nii.gz` ground truth
- cohort.py: case loop that skips bad cases with their reason
- report.py, plots.py: cases.csv, summary.json, curves.png, per-case PET MIP PNGs
"""

from petclick.metrics.aggregate import auc_trapezoid, case_summary, cohort_summary
from petclick.metrics.detection import DetectionScorer, detection_metrics
from petclick.metrics.lesion import LesionScorer, lesion_metrics
from petclick.metrics.protocol import MODES, protocol_row
from petclick.metrics.report import read_cases_csv, write_report

__all__ = ["DetectionScorer", "detection_metrics", "LesionScorer", "MODES", "auc_trapezoid", "case_summary",
           "cohort_summary", "lesion_metrics", "protocol_row",
           "read_cases_csv", "write_report"]
