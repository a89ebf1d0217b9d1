"""The test scripts' own epoch clock: a line an epoch (`epoch 3 time 4.210 val 1.800 save 0.120`) printed, and
appended to a log file when the script is given one (`--log`), as users log their timers."""

LOG = None  # the script's --log, set by its main()


def say(line):
    print(line, flush=True)
    if LOG:
        with open(LOG, "a") as f:
            f.write(line + "\n")
