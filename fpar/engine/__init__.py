"""Everything between a model and DeepSpeed: process groups, engine set-up, optimiser
groups and schedules, checkpoints and the preemption flag."""
