"""`python -m demixbench.train ARGS.json`: what torchrun runs in every worker (see worker.main)."""

from demixbench.train.worker import main

if __name__ == "__main__":
    main()
