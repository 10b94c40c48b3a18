"""`ravar serve`: a web page over a `Predictor` (video, sentence and time in; the annotated
keyframe, the action probabilities and the result's JSON out).

Gradio is an optional extra (`pip install 'ravar[app]'`): only `page.py` imports it, through
`extra.require_gradio()`. `callback.py` holds the page's prediction without any web code.
"""
