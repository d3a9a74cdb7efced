"""``talmts bench``: what the network costs on this machine. ``network`` times the forward pass (and counts FLOPs,
the device's peak, memory), ``training`` one training step per speed lever, ``plan`` turns the command's options
into the measurements and runs them, one row each."""
