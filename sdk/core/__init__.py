"""The shared vocabulary: errors, names, statuses, the run record, settings, the model
contract and configs, what a step is. It imports nothing else of csflow."""
