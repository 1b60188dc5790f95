"""The exit statuses of the stages' command lines, in one place: the job's runner reads them
from here (a stage states which of them mean success or a usable partial result), never from a
``__main__`` module. 1 is always a crash (Python's status for an uncaught exception)."""
OK = 0
CRASH = 1
BAD_INPUT = 2  # one message on stderr, nothing written
PARTIAL = 3  # convert: some artifacts failed their checks; the others are written and listed
NOTHING_CHOSEN = 3  # pipeline.choose: it ran and no artifact meets the budget (a decision)
ROWS_FAILED = 4  # edge_eval accuracy/bench/android: some rows failed (they are in the records)
GATE_FAILED = 1  # edge_eval/pipeline report: the drift gate or --require-choice failed
