"""Nsight Compute reports (.ncu-rep): the metrics perfctl asks ncu for and reads back (`metrics`), and
the reader, through NVIDIA's own Python report interface, the `ncu-report` package (`reader`)."""
