"""Workers: the background runs that drive what no request finished.

The minute's processor run (processor): it resumes stalled fan-outs, delivers due
scheduled messages, sweeps the chat core's missed messages, then drains the queues.
Imports the foundation, guarding, delivering and accepting.
"""
