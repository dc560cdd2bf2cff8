"""Networks and their training: the architectures (:mod:`.shallow`, :mod:`.deep`), the model
registry (:mod:`.models`), the one supervised training loop (:mod:`.training`), N networks trained
as one ensemble (:mod:`.ensemble`) and compiled training (:mod:`.compiling`). Used by the pools
and the evaluation alike; knows nothing of either."""
