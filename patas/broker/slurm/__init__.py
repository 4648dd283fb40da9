"""Agents inside Slurm jobs: submit with sbatch, one agent per allocated node through srun."""
