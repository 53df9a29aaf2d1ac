// RUN: parse-print %s | filecheck %s
// RUN: roundtrip %s

// A model module as the frontend builds it: hand-written value names are
// renumbered in op order, parameters keep theirs, attributes come back sorted.

// CHECK: module attributes {dl.model = {name = "mlp", optimizer = {learning_rate = 0.001, name = "rmsprop"}}} {
module attributes {dl.model = {optimizer = {name = "rmsprop", learning_rate = 1.000000e-03 : f64}, name = "mlp"}} {

  // CHECK-LABEL: func.func @predict(%w: tensor<784x10xf32> {dl.name = "w"}, %b: tensor<10xf32> {dl.name = "b"}, %x: tensor<?x784xf32, "N"> {dl.name = "x"}) -> (tensor<?x10xf32, "N"> {dl.name = "probs"}) {
  // CHECK-NEXT:    %0 = "dl.matmul"(%x, %w) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
  // CHECK-NEXT:    %1 = "dl.add"(%0, %b) : (tensor<?x10xf32, "N">, tensor<10xf32>) -> tensor<?x10xf32, "N">
  // CHECK-NEXT:    %2 = "dl.softmax"(%1) {axis = -1} : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
  // CHECK-NEXT:    func.return %2 : tensor<?x10xf32, "N">
  // CHECK-NEXT:  }
  func.func @predict(%w: tensor<784x10xf32>, %b: tensor<10xf32>, %x: tensor<?x784xf32, "N">) -> (tensor<?x10xf32, "N"> {dl.name = "probs"}) {
    %logits = "dl.matmul"(%x, %w) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
    %biased = "dl.add"(%logits, %b) : (tensor<?x10xf32, "N">, tensor<10xf32>) -> tensor<?x10xf32, "N">
    %probs = "dl.softmax"(%biased) : (tensor<?x10xf32, "N">) -> tensor<?x10xf32, "N">
    func.return %probs : tensor<?x10xf32, "N">
  }

  // Defaults are filled in (sum's keepdims), constants keep their dense values.
  // CHECK-LABEL: func.func @loss(%w: tensor<784x10xf32> {dl.name = "w"}, %x: tensor<?x784xf32, "N"> {dl.name = "x"}, %y: tensor<?xi64, "N"> {dl.name = "y"}) -> (tensor<f32> {dl.name = "loss"}, tensor<?xi64, "N">) {
  // CHECK-NEXT:    %0 = "dl.matmul"(%x, %w)
  // CHECK-NEXT:    %1 = "dl.sparse_categorical_crossentropy"(%0, %y) {from_logits = true} : (tensor<?x10xf32, "N">, tensor<?xi64, "N">) -> tensor<f32>
  // CHECK-NEXT:    %2 = "dl.constant"() {dtype = f32, shape = [], value = dense<0.5> : tensor<f64>} : () -> tensor<f32>
  // CHECK-NEXT:    %3 = "dl.mul"(%1, %2) : (tensor<f32>, tensor<f32>) -> tensor<f32>
  // CHECK-NEXT:    %4 = "dl.constant"() {dtype = f32, shape = [2, 2], value = dense<[[1.0, -0.0], [1.0e-07, 0.1]]> : tensor<2x2xf32>} : () -> tensor<2x2xf32>
  // CHECK-NEXT:    %5 = "dl.argmax"(%0) {axis = 1, keepdims = false} : (tensor<?x10xf32, "N">) -> tensor<?xi64, "N">
  // CHECK-NEXT:    %6 = "dl.sum"(%4) {axes = unit, keepdims = false} : (tensor<2x2xf32>) -> tensor<f32>
  // CHECK-NEXT:    func.return %3, %5 : tensor<f32>, tensor<?xi64, "N">
  func.func @loss(%w: tensor<784x10xf32>, %x: tensor<?x784xf32, "N">, %y: tensor<?xi64, "N">) -> (tensor<f32> {dl.name = "loss"}, tensor<?xi64, "N">) {
    %0 = "dl.matmul"(%x, %w) : (tensor<?x784xf32, "N">, tensor<784x10xf32>) -> tensor<?x10xf32, "N">
    %1 = "dl.sparse_categorical_crossentropy"(%0, %y) {from_logits = true} : (tensor<?x10xf32, "N">, tensor<?xi64, "N">) -> tensor<f32>
    %half = "dl.constant"() {dtype = f32, value = 0.5} : () -> tensor<f32>
    %2 = "dl.mul"(%1, %half) : (tensor<f32>, tensor<f32>) -> tensor<f32>
    %c = "dl.constant"() {dtype = f32, shape = [2, 2], value = dense<[[1.0, -0.0], [1.0e-7, 0.1]]> : tensor<2x2xf32>} : () -> tensor<2x2xf32>
    %pred = "dl.argmax"(%0) {axis = 1} : (tensor<?x10xf32, "N">) -> tensor<?xi64, "N">
    %unused = "dl.sum"(%c) : (tensor<2x2xf32>) -> tensor<f32>
    func.return %2, %pred : tensor<f32>, tensor<?xi64, "N">
  }

  // A training step writes its new weights into the old ones' buffers.
  // CHECK-LABEL: func.func @train_step(%w: tensor<4x2xf32> {dl.name = "w"}, %g: tensor<4x2xf32> {dl.name = "g"}) -> (tensor<4x2xf32> {dl.name = "w"}) attributes {inplace = [[0, 0]]} {
  // CHECK-NEXT:    %0 = "dl.sub"(%w, %g)
  // CHECK-NEXT:    func.return %0 : tensor<4x2xf32>
  func.func @train_step(%w: tensor<4x2xf32>, %g: tensor<4x2xf32>) -> (tensor<4x2xf32> {dl.name = "w"}) attributes {inplace = [[0, "w"]]} {
    %0 = "dl.sub"(%w, %g) : (tensor<4x2xf32>, tensor<4x2xf32>) -> tensor<4x2xf32>
    func.return %0 : tensor<4x2xf32>
  }

  // No outputs, no parameters.
  // CHECK-LABEL: func.func @nothing() -> () {
  // CHECK-NEXT:    func.return
  // CHECK-NEXT:  }
  // CHECK-NEXT: }
  func.func @nothing() -> () {
    func.return
  }
}
