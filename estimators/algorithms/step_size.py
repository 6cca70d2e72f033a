"""Step-size policies of the HMC moves along a tempered path: one target, three rules.

Every rule moves the leapfrog step size toward a mean acceptance probability of
``TARGET_ACCEPT`` (0.65, the usual HMC target):
    AIS/BDMC adapt=pilot   log eps += mean acceptance - 0.65 after each pilot move, clipped to
                           ``PILOT_STEP_RANGE``; the measured chains use the pilot's, frozen
    AIS/BDMC adapt=online  eps x1.02 while the chain's moving-average acceptance (slowness
                           ``ONLINE_SLOWNESS``) is above 0.65, else x0.98, clipped to
                           ``ONLINE_STEP_RANGE`` (eval_gen's and the BDMC code's rule)
    SMC                    log s_t = log s_(t-1) + (acceptance of stage t-1 - 0.65), clipped
                           (``smc.LOG_STEP_SCALE_RANGE``), s_t times the particles' spread
The rules themselves live with the loops they steer (``annealing``, ``smc``).
"""

TARGET_ACCEPT = 0.65
PILOT_STEP_RANGE = (1e-4, 10.0)
ONLINE_STEP_RANGE = (1e-4, 0.5)  # eval_gen's clip
ONLINE_SLOWNESS = 0.9  # eval_gen's moving average of the acceptance rate
