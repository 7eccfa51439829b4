"""The training engine's parts; train.py tells the story of a run over them.

    settings     every setting declared once (default, help, check): the command line, the
                 table a run prints, the notebook's defaults, validation (no TensorFlow)
    runs         run folders, the lock, resume, where the model goes (no TensorFlow)
    data         the faces a run trains on, the validation split, face hashes
    losses       masked losses and the RMSE metric, in pixels
    optimizers   the optimizers and the learning-rate and momentum schedules
    network      building a version's network, pre-training, distribution
    checkpoints  writing and reading a run's .keras checkpoints with its state
    device       the precision, compilation and batch size chosen by the device
    fused_batch_norm  Keras's batch norm layers trained with TensorFlow's fused kernel
    callbacks    what happens each epoch: checkpoints, the time plan, TensorBoard, Ctrl-C
    figures      learning curves and face grids
    hparams      a run's settings and final figures for TensorBoard's HParams dashboard

Importing this package imports none of them, so a tool that only needs paths or settings
(`training.runs`, `training.settings`) never loads TensorFlow.
"""
