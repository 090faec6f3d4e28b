"""``python -m circuitclust`` (and ``torchrun -m circuitclust finetune ...``) run the CLI."""
from .cli.main import main

main()
