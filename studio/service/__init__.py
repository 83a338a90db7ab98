"""The service layer: training jobs and run folders, the library of datasets and adapters, the A/B comparer, public mode, ZeroGPU."""
