"""Delivering: an accepted message into each recipient's inbox, in chat order, exactly once.

What one placement writes (placing), the queue entries' life and back-off (queue),
reading the queues (backlog), one entry's delivery and the trigger's attempt (delivery),
large groups chunk by chunk (fan_out), the rollback switch's delivery in the request
(rollback), pushes to offline recipients (notifier).
Imports the foundation and guarding.
"""
