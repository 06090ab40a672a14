"""The commands `perfctl` runs, one module each: a function that does the work and returns a result
for one renderer (perfctl.report) to show. perfctl.cli declares the options and calls them.

  analyze    find the export behind PATH, analyze it, write analysis.json, report.html, summary.md
  compare    two runs' analyses compared, gated on slower stages
  doctor     can this machine make a trustworthy capture (checks and the live self-test)
  open       a run's Nsight Systems report in nsys-ui, or its path
  calibrate  this GPU's measured matmul rate and memory bandwidth
  flops      analytic FLOPs per stage from a model config
  runs       the runs a profiles folder's registry recorded
"""
