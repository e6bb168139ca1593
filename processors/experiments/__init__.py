"""A/B experiments: deterministic assignment, always-valid lift intervals, sample-ratio checks, decisions.

Modules, one concept each: :mod:`.assignment` (which variant a unit gets),
:mod:`.sequential` (the confidence sequence and always-valid p-value of a
relative lift), :mod:`.srm` (sample-ratio mismatch), :mod:`.metrics` (the
metrics and each variant's estimate), :mod:`.record` (the Experiment record),
:mod:`.evaluation` (status and decision). Pure: the history is summed up by the
shell (``reverify experiment status``), and time comes from the records.
"""

from reverify.processors.experiments.assignment import Assignment, assign
from reverify.processors.experiments.evaluation import evaluate
from reverify.processors.experiments.record import ExperimentError, experiment_record, stopped
from reverify.processors.experiments.sequential import ArmSummary

__all__ = ["ArmSummary", "Assignment", "ExperimentError", "assign", "evaluate", "experiment_record", "stopped"]
