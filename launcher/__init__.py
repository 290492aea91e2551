"""Getting fpar processes onto machines: the command line, local launch, SLURM."""
