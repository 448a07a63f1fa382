"""The learner: DeepSpeed ranks as Ray actors forming one torch.distributed group."""
