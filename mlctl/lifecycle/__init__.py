"""The model lifecycle: train, tune, track, register, deploy, roll back."""
