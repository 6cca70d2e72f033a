"""asv benchmarks of the estimators: speed, compilation, memory and accuracy across commits.

speed.py        time_*     seconds per compiled estimate() call, per model x method x M
compilation.py  time_*     seconds to trace and XLA-compile the estimator for a new model
memory.py       peakmem_*  peak memory at M = 2^16 and 2^18 (flat in M)
accuracy.py     track_*    |bias|, variance and M/ESS at fixed seeds (lower is better)
common.py       the fixed models and data (append only)
"""
